/**
 * The victims' process (`Victims.spawn`): starts the victims with the options in its first argument, tells its parent
 * when they are subscribed, switches phase when told, and sends back the report on `Finish`, then exits.
 */
import * as Tokens from "./tokens.ts"
import * as Victims from "./victims.ts"

const send = (answer: Victims.Answer) => process.send?.(answer)

const options = JSON.parse(process.argv[2] ?? "{}") as Victims.SpawnOptions
try {
  const victims = await Victims.start({ ...options, userToken: (i) => Tokens.userToken(`victim-${i}`, ["100"]) })
  process.on("message", (command: Victims.Command) => {
    if (command._tag === "Phase") return victims.setPhase(command.phase)
    victims.finish().then(
      (report) => {
        send({ _tag: "Report", report })
        process.disconnect()
      },
      (error: unknown) => send({ _tag: "Failed", message: error instanceof Error ? error.message : String(error) })
    )
  })
  send({ _tag: "Ready" })
} catch (error) {
  send({ _tag: "Failed", message: error instanceof Error ? error.message : String(error) })
  process.exitCode = 1
}
