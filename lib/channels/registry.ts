/**
 * The channel registry: the one file that knows every channel transform (tardis-node's
 * `mappers/index.ts`). Each entry says which events it handles (`canHandle`), makes its
 * transform (`create`, one per pipeline, so caches are its own) and what to subscribe to
 * (`getFilters`). A further channel is one transform file plus one entry here.
 */
import { createSpreadTransform } from "../../transform.ts";
import { createTradeTransform } from "../../trades.ts";
import { createBarTransform } from "../../bars.ts";
import { ConfigError } from "../config/errors.ts";
import { topicsFor } from "../polygon/protocol.ts";
import type { FrameTransform, OutRecord } from "../sink.ts";
import type { Clock } from "../bounds.ts";
import type { BatchObserver } from "../pipeline.ts";
import type { ChannelPlan } from "./pipelines.ts";
import type { KafkaConfig } from "../config/kafka.ts";
import { gapsTopicFor } from "../config/defaults.ts";

/** One Polygon channel the producer can carry. */
export interface ChannelEntry {
  /** Polygon's event name (`ev`) and subscription prefix: `XQ`, `XT`, `XA`. */
  readonly channel: string;
  /** What its records are, for logs and the `channel` label: `quotes`, `trades`, `bars`. */
  readonly name: string;
  /** Whether an event's `ev` belongs to this channel. */
  canHandle(ev: unknown): boolean;
  /** A new transform with its own caches and counts; `clock` (live) bounds how far ahead a `t` may be. */
  create(options?: { clock?: Clock }): FrameTransform;
  /** The subscription topics for `pairs` (`XT.BTC-USD`, or `XT.*`). */
  getFilters(pairs: readonly string[]): string[];
  /** Its Kafka topics: records (`--topic`, `--trades-topic`, `--bars-topic`) and gaps (`<records topic>.gaps`). */
  topicsOf(config: ChannelTopicConfig): { topic: string; gapsTopic: string };
}

/** The topic settings the channels' topics come from. */
export type ChannelTopicConfig = Pick<
  KafkaConfig,
  "topic" | "gapsTopic" | "tradesTopic" | "barsTopic"
>;

function entry(
  channel: string,
  name: string,
  create: (options?: { clock?: Clock }) => FrameTransform,
  topicsOf: ChannelEntry["topicsOf"],
): ChannelEntry {
  return {
    channel,
    name,
    canHandle: (ev) => ev === channel,
    create,
    getFilters: (pairs) => topicsFor(pairs, channel),
    topicsOf,
  };
}

function withGaps(topic: string): { topic: string; gapsTopic: string } {
  return { topic, gapsTopic: gapsTopicFor(topic) };
}

/** Every channel, in the order topics are subscribed and reported. */
export const CHANNELS: readonly ChannelEntry[] = [
  // Quotes keep the topics they always had: --topic and --gaps-topic.
  entry(
    "XQ",
    "quotes",
    (options) => createSpreadTransform({ clock: options?.clock }),
    (c) => ({ topic: c.topic, gapsTopic: c.gapsTopic }),
  ),
  entry(
    "XT",
    "trades",
    (options) => createTradeTransform({ clock: options?.clock }),
    (c) => withGaps(c.tradesTopic ?? `${c.topic}.trades`),
  ),
  entry(
    "XA",
    "bars",
    (options) => createBarTransform({ clock: options?.clock }),
    (c) => withGaps(c.barsTopic ?? `${c.topic}.bars`),
  ),
];

/** The channel names, `["XQ","XT","XA"]`. */
export const CHANNEL_NAMES: readonly string[] = CHANNELS.map((c) => c.channel);

/** The entry of `channel`; throws {@linkcode ConfigError} for one the registry lacks. */
export function channelEntry(channel: string): ChannelEntry {
  const found = CHANNELS.find((c) => c.channel === channel);
  if (found === undefined) {
    throw new ConfigError(
      `--channels must list channels among ${CHANNEL_NAMES.join(", ")}, got "${channel}"`,
    );
  }
  return found;
}

/**
 * Checks the `--channels` list: upper-cased, known, each once, at least one; in the order given
 * (the first is the primary channel, which counts events no channel handles).
 */
export function parseChannels(list: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of list) {
    const c = raw.trim().toUpperCase();
    if (c === "") continue;
    channelEntry(c);
    if (!out.includes(c)) out.push(c);
  }
  if (out.length === 0) {
    throw new ConfigError(
      `--channels must list at least one channel among ${CHANNEL_NAMES.join(", ")}`,
    );
  }
  return out;
}

/** The subscription topics of every channel in `channels` for `pairs`, in order. */
export function filtersFor(channels: readonly string[], pairs: readonly string[]): string[] {
  return channels.flatMap((c) => channelEntry(c).getFilters(pairs));
}

/**
 * The Kafka topics of `channels` beyond the quotes' own (`--topic` and `--gaps-topic`, which every
 * run prepares): each channel's records topic and its gaps topic, in order. Produce and replay
 * prepare them, and the doctor checks them, from this one list.
 * @example
 * ```ts
 * channelTopicsFor(["XQ", "XT"], { topic: "q", gapsTopic: "q.gaps" });
 * // [{ topic: "q.trades", gapsTopic: "q.trades.gaps" }]
 * ```
 */
export function channelTopicsFor(
  channels: readonly string[],
  config: ChannelTopicConfig,
): { topic: string; gapsTopic: string }[] {
  return channels.filter((c) => c !== "XQ").map((c) => channelEntry(c).topicsOf(config));
}

/** The channel a subscription topic belongs to (`"XT.BTC-USD"` → `"XT"`). */
export function channelOfTopic(topic: string): string {
  const dot = topic.indexOf(".");
  return dot === -1 ? topic : topic.slice(0, dot);
}

/** Options for {@linkcode channelPlans}. */
export interface ChannelPlanOptions {
  /** Observers of acknowledged batches, by channel (e.g. the spread metrics for `XQ`). */
  observers?: Readonly<Record<string, BatchObserver<OutRecord>>>;
  /**
   * The local clock, for live data: every channel's transform skips a `t` far ahead of it
   * (`time_out_of_range`). Replay passes none.
   */
  clock?: Clock;
}

/** The plan of each channel: a new transform, its topics and its observer. */
export function channelPlans(
  channels: readonly string[],
  topics: ChannelTopicConfig,
  options: ChannelPlanOptions = {},
): ChannelPlan[] {
  return channels.map((c) => {
    const e = channelEntry(c);
    return {
      channel: e.channel,
      canHandle: e.canHandle,
      transform: e.create({ clock: options.clock }),
      ...e.topicsOf(topics),
      observer: options.observers?.[c],
    };
  });
}
