/**
 * `npm run token -- --sub u1 --wedding 42`: prints a user JWT signed with the gateway's secret (`JWT_SECRET`, or the
 * development secret `npm start` uses while it is unset), for trying private channels by hand.
 *
 * Options: --sub <id> (default "dev-user"), --wedding <id> and --supplier <id> (repeatable: the ids go to
 * `app_metadata.wedding_ids` / `supplier_ids`), --role <role> (default "authenticated"), --service-role,
 * --exp <seconds> (default 3600). With JWT_ISSUER / JWT_AUDIENCE set, the token carries them.
 */
import { AuthConfig } from "@wedsync/auth"
import { SignJWT } from "jose"
import { parseArgs } from "node:util"

export interface TokenOptions {
  readonly sub: string
  readonly role: string
  readonly weddingIds: ReadonlyArray<string>
  readonly supplierIds: ReadonlyArray<string>
  readonly expiresInSeconds: number
}

const parseTokenArgs = (argv: ReadonlyArray<string>): TokenOptions => {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      sub: { type: "string", default: "dev-user" },
      role: { type: "string", default: "authenticated" },
      "service-role": { type: "boolean", default: false },
      wedding: { type: "string", multiple: true, default: [] },
      supplier: { type: "string", multiple: true, default: [] },
      exp: { type: "string", default: "3600" }
    }
  })
  const expiresInSeconds = Number(values.exp)
  if (!Number.isSafeInteger(expiresInSeconds) || expiresInSeconds <= 0)
    throw new Error(`--exp must be a positive number of seconds, got "${values.exp}"`)
  return {
    sub: values.sub,
    role: values["service-role"] ? "service_role" : values.role,
    weddingIds: values.wedding,
    supplierIds: values.supplier,
    expiresInSeconds
  }
}

const signToken = (options: TokenOptions, env: NodeJS.ProcessEnv): Promise<string> => {
  const secret = env["JWT_SECRET"] || AuthConfig.DEV_JWT_SECRET
  const now = Math.floor(Date.now() / 1000)
  let jwt = new SignJWT({
    role: options.role,
    app_metadata: { wedding_ids: options.weddingIds, supplier_ids: options.supplierIds }
  })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(options.sub)
    .setIssuedAt(now)
    .setExpirationTime(now + options.expiresInSeconds)
  if (env["JWT_ISSUER"]) jwt = jwt.setIssuer(env["JWT_ISSUER"])
  if (env["JWT_AUDIENCE"]) jwt = jwt.setAudience(env["JWT_AUDIENCE"])
  return jwt.sign(new TextEncoder().encode(secret))
}

if (import.meta.main) {
  try {
    console.log(await signToken(parseTokenArgs(process.argv.slice(2)), process.env))
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error))
    process.exitCode = 2
  }
}
