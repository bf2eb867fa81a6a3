/**
 * Partial test doubles: give a service only the methods a test uses; every other member dies with
 * `unimplemented <service key>.<member>` the moment it is used, so a test that strays fails loudly and says where.
 *
 * A port of the Effect examples' `makeTestLayer` to `Context.Service`. A missing member is both a function returning a
 * dying Effect and a dying Effect itself, so it covers `svc.method(args)` and `yield* svc.effectValue` alike. It is for
 * one-off doubles; a contract with several implementations deserves a real `layerTest` or `layerMemory`.
 */
import { Effect, Layer } from "effect"
import type { Context } from "effect"

// Members that libraries probe for by duck typing (promise adoption, JSON, vitest matchers); answering them with a
// dying function would make the double look like a thenable and so on.
const probedMembers = new Set<string | symbol>(["then", "toJSON", "asymmetricMatch", "$$typeof", "nodeType"])

const unimplemented = (key: string, member: string): unknown => {
  const dead = Effect.die(new Error(`unimplemented ${key}.${member}`))
  const fn = () => dead
  Object.setPrototypeOf(fn, Object.getPrototypeOf(dead))
  return Object.assign(fn, dead)
}

/** A service value: members from `impl`, every other member dies with `unimplemented <key>.<member>` when used. */
export const partial = <I, S extends object>(service: Context.Key<I, S>, impl: Partial<S>): S => {
  const made = new Map<string, unknown>()
  return new Proxy({ ...impl } as S, {
    get(target, property, receiver) {
      if (typeof property === "symbol" || property in target || probedMembers.has(property)) {
        return Reflect.get(target, property, receiver)
      }
      let value = made.get(property)
      if (value === undefined) {
        value = unimplemented(service.key, property)
        made.set(property, value)
      }
      return value
    }
  })
}

/** A layer providing `partial(service, impl)`. */
export const partialLayer = <I, S extends object>(service: Context.Key<I, S>, impl: Partial<S>): Layer.Layer<I> =>
  Layer.succeed(service, partial(service, impl))
