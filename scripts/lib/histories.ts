// Activity spans (scheduled, started, closed) read back from a run's Temporal histories, across its
// continue-as-new executions: what the benchmarks time a run by, from the server's own clock.
import type { temporal } from '@temporalio/proto';
import type { Connected } from '../../cli/client.js';

const ms = (t: temporal.api.history.v1.IHistoryEvent['eventTime']): number => Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);

export interface ActivitySpan {
  type: string;
  /** Milliseconds since the epoch. */
  scheduled: number;
  started: number;
  closed: number;
}

/** The closed activities of every execution of `workflowId`, in scheduling order (local activities leave no events). */
export async function activitySpans(c: Connected, workflowId: string): Promise<ActivitySpan[]> {
  const spans: ActivitySpan[] = [];
  for await (const execution of c.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
    const history = await c.client.workflow.getHandle(workflowId, execution.runId).fetchHistory();
    const byScheduled = new Map<string, ActivitySpan>();
    for (const e of history.events ?? []) {
      const id = String(e.eventId);
      if (e.activityTaskScheduledEventAttributes) byScheduled.set(id, { type: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?', scheduled: ms(e.eventTime), started: NaN, closed: NaN });
      const started = e.activityTaskStartedEventAttributes;
      if (started) byScheduled.get(String(started.scheduledEventId))!.started = ms(e.eventTime);
      const closed = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes;
      if (closed) byScheduled.get(String(closed.scheduledEventId))!.closed = ms(e.eventTime);
    }
    spans.push(...byScheduled.values());
  }
  return spans.filter((s) => Number.isFinite(s.closed)).sort((a, b) => a.scheduled - b.scheduled);
}
