// Types for progress-client.js, a plain script that sets window.ProgressClient.
// The API's own types come from progress-api.d.ts, generated from the OpenAPI document
// (make types); these name the parts the client hands back. Written by hand, checked by
// `tsc --noEmit` together with devtools/typescript/example.ts.

type ProgressSchemas = import("./progress-api").components["schemas"];

declare namespace ProgressClient {
  type Module = ProgressSchemas["ModuleOut"];
  type Lesson = ProgressSchemas["LessonOut"];
  type Progress = ProgressSchemas["ProgressOut"];
  type Completion = ProgressSchemas["CompletionOut"];
  type Access = ProgressSchemas["AccessOut"];
  type Review = ProgressSchemas["ReviewOut"];
  type ReviewWord = ProgressSchemas["ReviewWordOut"];
  type Word = ProgressSchemas["WordOut"];
  type LockScreenReport = ProgressSchemas["LockScreenOut"];
  type ApiError = ProgressSchemas["ErrorOut"];
  type PathName = Completion["path"];

  /** What onLockScreen receives: the lesson the guard refused, and its answer. */
  interface LockScreen {
    moduleId: string;
    lessonId: string;
    answer: Access;
  }

  /** The part of the Web Storage API the client uses (localStorage by default). */
  interface VersionStorage {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
  }

  interface Options {
    /** Bearer JWT of the learner (Supabase access token shape). */
    token: string;
    /** Origin of the service, "" for the page's own; another origin needs PROGRESS_CORS_ORIGINS. */
    baseUrl?: string;
    /** Called whenever the navigation guard answers "locked". */
    onLockScreen?: (lock: LockScreen) => void;
    /** Called when another tab of this learner saw a newer progress version. */
    onVersionChange?: (version: number) => void;
    /** A request without an answer after this long fails with code "timeout" (default 10000). */
    timeoutMs?: number;
    /** Where versions are kept across reloads and tabs; null keeps them in memory only. */
    storage?: VersionStorage | null;
  }

  /** Status 0: no answer (code "network_error" or "timeout"); else the HTTP status and the API's code. */
  class ProgressError extends Error {
    readonly name: "ProgressError";
    readonly status: number;
    readonly code: string;
    constructor(message: string, status: number, code: string);
  }
}

declare class ProgressClient {
  constructor(options: ProgressClient.Options);

  readonly baseUrl: string;
  readonly token: string;
  readonly timeoutMs: number;
  /** The learner's id from the token's `sub`; null if the token has none. */
  readonly learnerId: string | null;
  /** The highest progress version any tab of this learner saw: sent as minVersion. */
  readonly version: number;
  /** The WAL position the completion answer that made `version` gave (sent as minPosition);
   * null when `version` came from another answer, or the service knows none. */
  readonly position: number | null;
  /** The path ("legacy" | "verified") that served the last answer (X-Progress-Path). */
  readonly lastPath: ProgressClient.PathName | null;
  onLockScreen?: (lock: ProgressClient.LockScreen) => void;
  onVersionChange?: (version: number) => void;

  /** Modules in course order, each with its lessons in order. */
  curriculum(): Promise<ProgressClient.Module[]>;
  /** The learner's progress, never older than `version`. */
  progress(): Promise<ProgressClient.Progress>;
  /** Mark a lesson complete: one retry after 1 s on no answer or a 5xx (with the same
   * Idempotency-Key, so the retry learns the XP earned); a 4xx at once. */
  complete(moduleId: string, lessonId: string): Promise<ProgressClient.Completion>;
  /** The review set: the words of every completed lesson, never older than `version`. */
  review(): Promise<ProgressClient.Review>;
  /** The navigation guard: is the lesson open? Calls onLockScreen when it is not. */
  access(moduleId: string, lessonId: string): Promise<ProgressClient.Access>;
  /** Report a lock screen shown, with the lockReceipt its locked answer carried. */
  reportLockScreen(
    moduleId: string,
    lessonId: string,
    lockReceipt?: string
  ): Promise<ProgressClient.LockScreenReport>;
  /** Keep a version seen elsewhere (versions only grow). */
  remember(version: number): void;
  /** Stop following other tabs' versions. */
  close(): void;
}

interface Window {
  ProgressClient: typeof ProgressClient;
}
