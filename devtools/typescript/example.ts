// A typed use of the reference client, as a frontend would write it; `tsc --noEmit` checks
// it in the test suite (tests/test_frontend_types.py). The @ts-expect-error lines prove the
// types refuse what the API would refuse.
import type { components, operations } from "../../progress/static/progress-api";

type Access = components["schemas"]["AccessOut"];
type CompleteAnswer = operations["completeLesson"]["responses"][200]["content"]["application/json"];

export async function openLesson(
  client: ProgressClient,
  moduleId: string,
  lessonId: string
): Promise<"lesson" | "lock-screen"> {
  const answer: Access = await client.access(moduleId, lessonId);
  if (answer.accessible) return "lesson";
  // Only a locked answer carries a receipt; report the lock screen with it.
  const report = await client.reportLockScreen(moduleId, lessonId, answer.lockReceipt ?? undefined);
  return report.falseLock ? "lesson" : "lock-screen";
}

export async function finishLesson(token: string): Promise<number> {
  const client = new window.ProgressClient({
    baseUrl: "https://progress.example.com",
    token,
    timeoutMs: 8000,
    onVersionChange: (version) => console.info("another tab saw version", version),
  });
  const modules = await client.curriculum();
  const first = modules[0]?.lessons[0];
  if (!first || !modules[0]) return client.version;
  try {
    const done: CompleteAnswer = await client.complete(modules[0].id, first.id);
    const path: "legacy" | "verified" = done.path;
    console.info(path, done.cacheUpdated, `+${done.xpEarned} XP (${done.xpTotal} in all)`);
    const review: ProgressClient.Review = await client.review();
    const terms: string[] = review.words.map((word) => `${word.term}: ${word.translation}`);
    console.info(terms);
  } catch (error) {
    if (error instanceof ProgressClient.ProgressError && error.status === 0) {
      console.warn("not saved, no answer:", error.code);
    }
    throw error;
  }
  const progress = await client.progress();
  const open = progress.lessons.filter((lesson) => lesson.accessible).length;
  // @ts-expect-error -- completedAt is a string (ISO 8601), not a Date
  const when: Date = progress.completed[0]?.completedAt;
  // @ts-expect-error -- lesson ids are strings
  await client.access("basics", 2);
  // @ts-expect-error -- a token is required
  new ProgressClient({ baseUrl: "" });
  console.info(open, when);
  return client.version;
}
