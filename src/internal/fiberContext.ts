/**
 * Contexts that fibers start in often.
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as References from "effect/References"
import * as Scheduler from "effect/Scheduler"

/**
 * The references `effect`'s runtime reads when a fiber starts in a context of a new cache root (one holding
 * its own `Tracer.ParentSpan`: every traced incarnation's): resolving one that a context does not hold is a
 * miss and a default's lookup, so `withResolvedReferences` writes their values in.
 */
const fiberReferences: ReadonlyArray<Context.Reference<any>> = [
  Scheduler.Scheduler,
  Scheduler.MaxOpsBeforeYield,
  Scheduler.PreventSchedulerYield,
  References.TracerEnabled,
  References.CurrentLogLevel,
  References.MinimumLogLevel,
  References.CurrentStackFrame
]

/**
 * `context`, flat, with the references a starting fiber reads written in at the values they have there (so
 * it reads the same values, each in one lookup). Meant for a context that many fibers start from, each in a
 * new cache root: the incarnations of the registrations made in one context.
 */
export const withResolvedReferences = (context: Context.Context<never>): Context.Context<never> => {
  const map = new Map(context.mapUnsafe)
  for (const reference of fiberReferences) {
    if (!map.has(reference.key)) map.set(reference.key, Context.get(context, reference))
  }
  return Context.makeUnsafe(map)
}
