// Grafana's published dashboard schema (@grafana/schema's Dashboard type), as a dashboard JSON
// file must satisfy it. Two adjustments, both Grafana's own intent:
// - a datasource's query fields (a Prometheus `expr`) ride on DataQuery through the
//   AnnotationQuery generic that Grafana's type provides for exactly that;
// - TypeScript enums become the string or number values JSON holds ("absolute", not
//   ThresholdsMode.Absolute), everything else is checked as declared, unknown fields included.
import type { AnnotationQuery, Dashboard, DataQuery } from "@grafana/schema";

type Query = DataQuery & Record<string, unknown>;

type AsJson<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends Array<infer Item>
      ? Array<AsJson<Item>>
      : T extends object
        ? { [Key in keyof T]: AsJson<T[Key]> }
        : T;

export type DashboardFile = AsJson<
  Omit<Dashboard, "annotations"> & { annotations?: { list?: Array<AnnotationQuery<Query>> } }
>;
