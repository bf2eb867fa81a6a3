/**
 * The properties the deployment files in `deploy/` must keep, as checks that return the problems they find (empty when
 * the file is right), so a test can show a file accepted beside a broken copy refused. Parsing is done by real tools:
 * dockerfile-ast for the Dockerfile, yaml for the manifests, the Kubernetes OpenAPI schemas compiled by
 * kubernetes-models, and the PromQL grammar of Prometheus' own editor (lezer-promql); `promtool` is run by the tests.
 */
import { parser as promqlParser } from "@prometheus-io/lezer-promql"
import { DockerfileParser, type Instruction, JSONInstruction } from "dockerfile-ast"
import { ConfigMap, Service } from "kubernetes-models/v1"
import { Deployment, type IDeployment } from "kubernetes-models/apps/v1"
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2"
import { PodDisruptionBudget } from "kubernetes-models/policy/v1"
import { parseAllDocuments } from "yaml"

/** Environment variables that hold secrets: never baked into an image, always from a Kubernetes Secret. */
export const secretVariables: ReadonlyArray<string> = [
  "JWT_SECRET",
  "REDIS_URL",
  "ADMIN_TOKEN",
  "CACHE_HMAC_KEY",
  "DATABASE_URL",
  "SUPABASE_SECRET_KEYS"
]

const looksSecret = (name: string): boolean =>
  secretVariables.includes(name) || /SECRET|PASSWORD|TOKEN|_KEY$|_KEYS$/i.test(name)

// ---------------------------------------------------------------------------------------------------------------
// Dockerfile

export interface DockerfileExpectations {
  /** The node invocation of `npm start`, e.g. `["node", "--max-semi-space-size=8", "apps/gateway/src/main.ts"]`. */
  readonly startCommand: ReadonlyArray<string>
  /** Every workspace directory (`apps/gateway`, `packages/hub`, `tools`…): the install stage needs each manifest. */
  readonly workspaces: ReadonlyArray<string>
}

const finalStage = (instructions: ReadonlyArray<Instruction>): ReadonlyArray<Instruction> => {
  const lastFrom = instructions.findLastIndex((i) => i.getKeyword() === "FROM")
  return lastFrom === -1 ? instructions : instructions.slice(lastFrom)
}

/** `ENV A=1 B=2` and the legacy `ENV A 1` as name/value pairs. */
const envPairs = (instruction: Instruction): ReadonlyArray<readonly [string, string]> => {
  const args = instruction.getArguments().map((a) => a.getValue())
  if (args.length === 2 && !args[0]!.includes("=")) return [[args[0]!, args[1]!]]
  return args.map((arg) => {
    const eq = arg.indexOf("=")
    return eq === -1 ? [arg, ""] as const : [arg.slice(0, eq), arg.slice(eq + 1)] as const
  })
}

/** The exec-form strings of a CMD/ENTRYPOINT/HEALTHCHECK CMD, or undefined when it is in shell form. */
export const execForm = (instruction: Instruction): ReadonlyArray<string> | undefined =>
  instruction instanceof JSONInstruction && instruction.getOpeningBracket() !== null
    ? instruction.getJSONStrings().map((s) => s.getJSONValue())
    : undefined

/** The exec-form command of a `HEALTHCHECK [flags] CMD [...]`, or undefined (none, shell form or NONE). */
export const healthcheckCommand = (instruction: Instruction): ReadonlyArray<string> | undefined => {
  const json = /\bCMD\s+(\[.*\])\s*$/s.exec(instruction.getRawArgumentsContent() ?? "")?.[1]
  if (json === undefined) return undefined
  const parsed: unknown = JSON.parse(json)
  return Array.isArray(parsed) && parsed.every((s) => typeof s === "string") ? parsed : undefined
}

/** Problems of the gateway's Dockerfile: base image, user, PID 1, secrets, listening address, workspace manifests. */
export const checkDockerfile = (content: string, expected: DockerfileExpectations): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const dockerfile = DockerfileParser.parse(content)
  const instructions = dockerfile.getInstructions()
  const stage = finalStage(instructions)
  const keyword = (k: string) => stage.filter((i) => i.getKeyword() === k)

  const base = stage[0]?.getKeyword() === "FROM" ? stage[0].getArguments().map((a) => a.getValue()) : []
  const image = base.find((a) => !a.startsWith("--")) ?? ""
  if (!/^node:24([.-]|$)/.test(image) && !/distroless\/nodejs24/.test(image)) {
    problems.push(`final stage must run on Node 24 (node:24-slim or distroless nodejs24), not "${image}"`)
  }

  const user = keyword("USER").at(-1)?.getArgumentsContent()?.trim()
  if (user === undefined) problems.push("final stage has no USER: the gateway would run as root")
  else {
    const name = user.split(":")[0]!
    if (name === "root" || name === "0") problems.push(`USER ${user} runs the gateway as root`)
    else if (!/^\d+$/.test(name)) problems.push(`USER ${user}: use a numeric uid so runAsNonRoot can verify it`)
  }

  const entrypoints = keyword("ENTRYPOINT")
  const cmds = keyword("CMD")
  if (cmds.length === 0) problems.push("no CMD")
  for (const instruction of [...entrypoints, ...cmds]) {
    if (execForm(instruction) === undefined) {
      problems.push(
        `${instruction.getKeyword()} is in shell form: /bin/sh would be PID 1 and SIGTERM would not reach the gateway`
      )
    }
  }
  const entrypoint = entrypoints.at(-1)
  const cmd = cmds.at(-1)
  const command = [...(entrypoint ? execForm(entrypoint) ?? [] : []), ...(cmd ? execForm(cmd) ?? [] : [])]
  // Under an init (`tini -- node …`) the command after it must be npm start's.
  const init = command[0] !== undefined && /(^|\/)(tini|dumb-init)$/.test(command[0])
  const separator = command.indexOf("--")
  const nodeCommand = !init ? command : command.slice(separator === -1 ? 1 : separator + 1)
  if (nodeCommand.join(" ") !== expected.startCommand.join(" ")) {
    problems.push(`the container runs "${nodeCommand.join(" ")}", not npm start's "${expected.startCommand.join(" ")}"`)
  }

  for (const instruction of instructions.filter((i) => i.getKeyword() === "ENV" || i.getKeyword() === "ARG")) {
    for (const [name] of envPairs(instruction)) {
      if (looksSecret(name)) {
        problems.push(`${instruction.getKeyword()} ${name}: secrets are given at run time, never baked into an image`)
      }
    }
  }
  const env = new Map(keyword("ENV").flatMap(envPairs))
  if (env.get("HOST") !== "0.0.0.0") {
    problems.push("ENV HOST=0.0.0.0 missing: the gateway listens on 127.0.0.1 by default, unreachable from outside")
  }

  const copied = new Set(
    instructions.filter((i) => i.getKeyword() === "COPY").flatMap((i) => i.getArguments().map((a) => a.getValue()))
  )
  for (const dir of expected.workspaces) {
    if (!copied.has(`${dir}/package.json`)) problems.push(`install stage does not copy ${dir}/package.json`)
  }
  if (!copied.has("package-lock.json")) problems.push("install stage does not copy package-lock.json")
  if (!instructions.some((i) => i.getKeyword() === "RUN" && /\bnpm ci\b/.test(i.getArgumentsContent() ?? ""))) {
    problems.push("dependencies are not installed with npm ci (the lockfile's exact versions)")
  }
  return problems
}

/** Problems of the ignore file: the context must not carry local installs, git history or secrets. */
export const checkDockerignore = (content: string): ReadonlyArray<string> => {
  const patterns = new Set(content.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#")))
  const required = ["**/node_modules", ".git", ".env"]
  return required.filter((p) => !patterns.has(p)).map((p) => `ignore file does not exclude ${p}`)
}

// ---------------------------------------------------------------------------------------------------------------
// Kubernetes

/** Parses a multi-document YAML file; a syntax error is thrown with its position. */
export const parseYamlDocuments = (content: string): ReadonlyArray<unknown> =>
  parseAllDocuments(content).map((doc) => {
    if (doc.errors.length > 0) throw new Error(doc.errors.map((e) => e.message).join("; "))
    return doc.toJS()
  })

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * Validates one object against the OpenAPI schema of its kind. Returns the problems (an unknown kind is one). The
 * schemas check types, required fields and enumerations; like kubectl's non-strict validation they do not reject
 * unknown fields, so the property checks below name every field the gateway depends on.
 */
export const validateAgainstSchema = (object: unknown): ReadonlyArray<string> => {
  const describe = isRecord(object) ? `${String(object.apiVersion)}/${String(object.kind)}` : "a non-object"
  const model = Deployment.is(object)
    ? new Deployment(object)
    : Service.is(object)
    ? new Service(object)
    : PodDisruptionBudget.is(object)
    ? new PodDisruptionBudget(object)
    : HorizontalPodAutoscaler.is(object)
    ? new HorizontalPodAutoscaler(object)
    : ConfigMap.is(object)
    ? new ConfigMap(object)
    : undefined
  if (model === undefined) return [`${describe}: no schema known for this kind`]
  try {
    model.validate()
    return []
  } catch (error) {
    return [`${describe}: ${error instanceof Error ? error.message : String(error)}`]
  }
}

/** `30000` from `DRAIN_TIMEOUT_MS`, else the gateway's default (docs/config.md). */
const drainTimeoutMs = (env: ReadonlyArray<{ name: string; value?: string }>): number => {
  const value = env.find((e) => e.name === "DRAIN_TIMEOUT_MS")?.value
  return value === undefined ? 30000 : Number(value)
}

/** Seconds a preStop hook holds the pod before SIGTERM (exec `sleep N` or the sleep action), or undefined. */
const preStopSeconds = (deployment: IDeployment): number | undefined => {
  const preStop = deployment.spec?.template.spec?.containers[0]?.lifecycle?.preStop
  if (preStop === undefined) return undefined
  if (preStop.sleep !== undefined) return preStop.sleep.seconds
  const command = preStop.exec?.command ?? []
  const seconds = command[0] === "sleep" ? Number(command[1]) : Number.NaN
  return Number.isFinite(seconds) ? seconds : 0
}

/** The HTTP server's own close after the drain waits at most this long (docs/architecture.md, graceful drain). */
const httpCloseSeconds = 5

/** Problems of the gateway Deployment: probes, drain, resources, security, secrets, one process per pod. */
export const checkDeployment = (deployment: IDeployment): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const pod = deployment.spec?.template.spec
  const container = pod?.containers[0]
  if (pod === undefined || container === undefined) return ["Deployment has no container"]
  const env = container.env ?? []
  const port = container.ports?.[0]
  const envValue = (name: string) => env.find((e) => e.name === name)?.value

  if (envValue("HOST") !== "0.0.0.0") problems.push("HOST must be 0.0.0.0 in a pod")
  if (port === undefined || String(port.containerPort) !== (envValue("PORT") ?? "4000")) {
    problems.push("the container port is not the gateway's PORT")
  }
  if (envValue("WORKERS") !== "1") {
    problems.push("WORKERS must be 1: /ready, /metrics and the HPA's per-pod metric then describe one process")
  }
  const probePort = (p: string | number | undefined) => p === port?.name || p === port?.containerPort
  const readiness = container.readinessProbe?.httpGet
  if (readiness === undefined) problems.push("no readinessProbe: a draining pod would keep getting new sockets")
  else if (readiness.path !== "/ready" || !probePort(readiness.port)) {
    problems.push(`readinessProbe must GET /ready on the gateway's port, not ${readiness.path}`)
  }
  const liveness = container.livenessProbe?.httpGet
  if (liveness === undefined) problems.push("no livenessProbe")
  else if (liveness.path !== "/health" || !probePort(liveness.port)) {
    problems.push("livenessProbe must GET /health: /ready fails while draining or while Postgres is away")
  }

  const hold = preStopSeconds(deployment)
  if (hold === undefined) problems.push("no preStop hook: SIGTERM would come before the endpoint removal spreads")
  const grace = pod.terminationGracePeriodSeconds ?? 30
  const needed = (hold ?? 0) + drainTimeoutMs(env) / 1000 + httpCloseSeconds
  if (grace <= needed) {
    problems.push(
      `terminationGracePeriodSeconds ${grace} must exceed preStop + DRAIN_TIMEOUT_MS + HTTP close (${needed} s)`
    )
  }

  const requests = container.resources?.requests ?? {}
  const limits = container.resources?.limits ?? {}
  if (requests.cpu === undefined || requests.memory === undefined) problems.push("resources.requests cpu and memory")
  if (limits.memory === undefined) problems.push("resources.limits.memory")

  const runAsNonRoot = container.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot
  const runAsUser = container.securityContext?.runAsUser ?? pod.securityContext?.runAsUser
  if (runAsNonRoot !== true) problems.push("securityContext.runAsNonRoot must be true")
  if (runAsUser === 0) problems.push("securityContext.runAsUser must not be 0")
  if (container.securityContext?.readOnlyRootFilesystem !== true) problems.push("readOnlyRootFilesystem must be true")
  if (container.securityContext?.allowPrivilegeEscalation !== false) {
    problems.push("allowPrivilegeEscalation must be false")
  }

  if (env.some((e) => e.name === "DATABASE_URL")) {
    problems.push(
      "DATABASE_URL in a scaled Deployment: every pod would stream from the one REPLICATION_SLOT, all but one unready"
    )
  }
  for (const name of ["JWT_SECRET", "REDIS_URL", "ADMIN_TOKEN", "CACHE_HMAC_KEY"]) {
    const entry = env.find((e) => e.name === name)
    if (entry?.valueFrom?.secretKeyRef === undefined) problems.push(`${name} must come from a Secret (secretKeyRef)`)
  }
  for (const entry of env) {
    if (looksSecret(entry.name) && entry.value !== undefined) {
      problems.push(`${entry.name} is a literal value in the manifest: use a secretKeyRef`)
    }
  }
  return problems
}

const selects = (selector: Readonly<Record<string, string>> | undefined, labels: Readonly<Record<string, string>>) =>
  selector !== undefined && Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([k, v]) => labels[k] === v)

/** Problems of how the objects refer to each other: selectors, ports, the HPA's target and metric. */
export const checkReferences = (
  objects: ReadonlyArray<unknown>,
  adapterMetrics: ReadonlyArray<string>
): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const deployment = objects.find(Deployment.is)
  if (deployment === undefined) return ["no Deployment"]
  const podLabels = deployment.spec?.template.metadata?.labels ?? {}
  const portNames = (deployment.spec?.template.spec?.containers ?? []).flatMap((c) => c.ports ?? []).map((p) => p.name)

  const service = objects.find(Service.is)
  if (service === undefined) problems.push("no Service")
  else {
    if (!selects(service.spec?.selector, podLabels)) problems.push("the Service does not select the gateway's pods")
    for (const p of service.spec?.ports ?? []) {
      if (typeof p.targetPort === "string" && !portNames.includes(p.targetPort)) {
        problems.push(`Service targetPort ${p.targetPort} is not a container port`)
      }
    }
  }
  const pdb = objects.find(PodDisruptionBudget.is)
  if (pdb === undefined) problems.push("no PodDisruptionBudget")
  else if (!selects(pdb.spec?.selector?.matchLabels, podLabels)) {
    problems.push("the PodDisruptionBudget does not select the gateway's pods")
  }
  const hpa = objects.find(HorizontalPodAutoscaler.is)
  if (hpa === undefined) problems.push("no HorizontalPodAutoscaler")
  else problems.push(...checkAutoscaler(hpa, deployment, adapterMetrics))
  return problems
}

/** Problems of the HPA: it must scale the Deployment on a per-pod metric the adapter serves. */
export const checkAutoscaler = (
  hpa: IHorizontalPodAutoscaler,
  deployment: IDeployment,
  adapterMetrics: ReadonlyArray<string>
): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const target = hpa.spec?.scaleTargetRef
  if (target?.kind !== "Deployment" || target.name !== deployment.metadata?.name) {
    problems.push("the HPA does not scale the gateway's Deployment")
  }
  if (deployment.spec?.replicas !== undefined) {
    problems.push("the Deployment sets replicas: each apply would reset what the HPA chose")
  }
  const pods = (hpa.spec?.metrics ?? []).filter((m) => m.type === "Pods")
  if (pods.length === 0) problems.push("the HPA has no Pods metric (the gateway's own metric)")
  for (const metric of pods) {
    const name = metric.pods?.metric.name ?? ""
    if (!adapterMetrics.includes(name)) problems.push(`the HPA's metric ${name} is served by no adapter rule`)
  }
  return problems
}

export interface AdapterRule {
  readonly seriesQuery: string
  readonly metricsQuery: string
  /** The name the custom metrics API serves it under. */
  readonly metricName: string
}

/** The rules of prometheus-adapter's config (`rules:` in the ConfigMap's `config.yaml`). */
export const adapterRules = (configYaml: string): ReadonlyArray<AdapterRule> => {
  const [config] = parseYamlDocuments(configYaml)
  const rules = isRecord(config) && Array.isArray(config.rules) ? config.rules : []
  return rules.filter(isRecord).map((rule) => {
    const seriesQuery = typeof rule.seriesQuery === "string" ? rule.seriesQuery : ""
    const name = isRecord(rule.name) ? rule.name : {}
    const seriesName = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(seriesQuery)?.[1] ?? ""
    return {
      seriesQuery,
      metricsQuery: typeof rule.metricsQuery === "string" ? rule.metricsQuery : "",
      metricName: typeof name.as === "string" ? name.as : seriesName
    }
  })
}

/** A metricsQuery template as the adapter renders it for one pod of a namespace. */
export const renderAdapterQuery = (template: string, series: string): string =>
  template
    .replaceAll("<<.Series>>", series)
    .replaceAll("<<.LabelMatchers>>", `namespace="default",pod=~"wedsync-realtime-.*"`)
    .replaceAll("<<.GroupBy>>", "pod")

// ---------------------------------------------------------------------------------------------------------------
// PromQL and the dashboard

/** Grafana's built-in interval variables replaced by a fixed range, so an expression is plain PromQL. */
export const withoutGrafanaVariables = (expr: string): string =>
  expr.replaceAll(/\$__(rate_interval|interval|range)\b/g, "5m")

/** The metric names an expression selects, or the offset of its first syntax error. */
export const promqlMetricNames = (
  expr: string
): { readonly names: ReadonlyArray<string> } | { readonly errorAt: number } => {
  const tree = promqlParser.parse(expr)
  const names: Array<string> = []
  let errorAt: number | undefined
  tree.iterate({
    enter: (node) => {
      if (node.type.isError && errorAt === undefined) errorAt = node.from
      if (node.name === "Identifier" && node.node.parent?.name === "VectorSelector") {
        names.push(expr.slice(node.from, node.to))
      }
    }
  })
  return errorAt === undefined ? { names } : { errorAt }
}

export interface DashboardQuery {
  readonly where: string
  readonly expr: string
}

/** Problems of the dashboard's structure, and every PromQL expression in it (panel targets and variable queries). */
export const dashboardQueries = (
  dashboard: unknown
): { readonly problems: ReadonlyArray<string>; readonly queries: ReadonlyArray<DashboardQuery> } => {
  const problems: Array<string> = []
  const queries: Array<DashboardQuery> = []
  if (!isRecord(dashboard)) return { problems: ["the dashboard is not a JSON object"], queries }
  for (const field of ["title", "uid"]) {
    if (typeof dashboard[field] !== "string" || dashboard[field] === "") problems.push(`dashboard has no ${field}`)
  }
  if (typeof dashboard.schemaVersion !== "number") problems.push("dashboard has no schemaVersion")
  const panels = Array.isArray(dashboard.panels) ? dashboard.panels : []
  if (panels.length === 0) problems.push("dashboard has no panels")
  const ids = new Set<unknown>()
  for (const panel of panels) {
    if (!isRecord(panel)) {
      problems.push("a panel is not an object")
      continue
    }
    const where = `panel ${String(panel.id)} "${String(panel.title)}"`
    if (ids.has(panel.id)) problems.push(`${where}: duplicate id`)
    ids.add(panel.id)
    const grid = isRecord(panel.gridPos) ? panel.gridPos : {}
    const [x, w] = [grid.x, grid.w]
    if (typeof x !== "number" || typeof w !== "number" || typeof grid.y !== "number" || typeof grid.h !== "number") {
      problems.push(`${where}: gridPos needs numbers x, y, w, h`)
    } else if (x < 0 || x + w > 24) problems.push(`${where}: gridPos outside Grafana's 24 columns`)
    if (typeof panel.type !== "string") problems.push(`${where}: no type`)
    if (panel.type === "row") continue
    const targets = Array.isArray(panel.targets) ? panel.targets.filter(isRecord) : []
    if (targets.length === 0) problems.push(`${where}: no targets`)
    const refIds = new Set<unknown>()
    for (const target of targets) {
      if (typeof target.expr !== "string" || target.expr === "") problems.push(`${where}: a target has no expr`)
      else queries.push({ where: `${where} ${String(target.refId)}`, expr: target.expr })
      if (typeof target.refId !== "string" || refIds.has(target.refId)) problems.push(`${where}: refIds must differ`)
      refIds.add(target.refId)
    }
  }
  const templating = isRecord(dashboard.templating) && Array.isArray(dashboard.templating.list)
    ? dashboard.templating.list.filter(isRecord)
    : []
  for (const variable of templating) {
    const query = isRecord(variable.query) ? variable.query.query : variable.query
    // label_values(selector, label) is Grafana's, not PromQL: its selector is.
    const selector = typeof query === "string" ? /^label_values\((.+),\s*[a-zA-Z_]\w*\)$/.exec(query)?.[1] : undefined
    if (selector !== undefined) queries.push({ where: `variable ${String(variable.name)}`, expr: selector })
  }
  return { problems, queries }
}

/** Sample names in a Prometheus exposition (histogram series as `_bucket`, `_sum`, `_count`). */
export const exposedNames = (exposition: string): ReadonlySet<string> =>
  new Set(
    exposition.split("\n").filter((l) => l !== "" && !l.startsWith("#")).map((l) => /^[a-zA-Z_:][\w:]*/.exec(l)?.[0])
      .filter((n): n is string => n !== undefined)
  )

/** The metric names of docs/metrics.md's table (its first column). */
export const documentedMetrics = (markdown: string): ReadonlySet<string> =>
  new Set([...markdown.matchAll(/^\| `([a-zA-Z_:][\w:]*)` \|/gm)].map((m) => m[1]!))

/** Problems of the queries: syntax, and metric names the gateway does not expose. */
export const checkQueries = (
  queries: ReadonlyArray<DashboardQuery>,
  exposed: ReadonlySet<string>
): ReadonlyArray<string> =>
  queries.flatMap(({ where, expr }) => {
    const parsed = promqlMetricNames(withoutGrafanaVariables(expr))
    if ("errorAt" in parsed) return [`${where}: PromQL syntax error at offset ${parsed.errorAt} in ${expr}`]
    if (parsed.names.length === 0) return [`${where}: selects no metric`]
    return parsed.names.filter((n) => !exposed.has(n)).map((n) => `${where}: ${n} is not exposed by the gateway`)
  })

/** A Prometheus rules file with one recording rule per expression, for `promtool check rules`. */
export const asRecordingRules = (exprs: ReadonlyArray<string>): string =>
  JSON.stringify({
    groups: [{
      name: "wedsync-deploy-check",
      rules: exprs.map((expr, i) => ({ record: `wedsync_deploy_check:expr_${i}`, expr: withoutGrafanaVariables(expr) }))
    }]
  })
