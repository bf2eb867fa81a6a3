/**
 * deploy/kubernetes parsed as YAML and validated against the Kubernetes OpenAPI schemas (kubernetes-models), then
 * checked for what the gateway needs: readiness on /ready, liveness on /health, a preStop hold and a grace period
 * longer than the drain, resources, a non-root read-only container, secrets from a Secret, selectors and ports that
 * meet, and an HPA whose metric the Prometheus adapter serves from a series the gateway exposes. Each check is shown
 * refusing a broken copy beside the accepted file.
 */
import { assert, describe } from "@effect/vitest"
import { Deployment, type IDeployment } from "kubernetes-models/apps/v1"
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2"
import { ConfigMap } from "kubernetes-models/v1"
import { test } from "vitest"
import {
  adapterRules,
  documentedMetrics,
  asRecordingRules,
  checkDeployment,
  checkReferences,
  parseYamlDocuments,
  promqlMetricNames,
  renderAdapterQuery,
  validateAgainstSchema
} from "../src/DeployChecks.ts"
import { promtoolCheckRules, read } from "./support.ts"

const manifests = ["deployment.yaml", "service.yaml", "pdb.yaml", "hpa.yaml", "prometheus-adapter.yaml"]
const objects = manifests.flatMap((file) => parseYamlDocuments(read(`deploy/kubernetes/${file}`)))
const deployment = objects.find(Deployment.is)!
const adapterConfig = objects.find(ConfigMap.is)?.data?.["config.yaml"] ?? ""
const rules = adapterRules(adapterConfig)
const served = rules.map((r) => r.metricName)

/** A deep copy of the Deployment changed by `edit`, for the refusal cases. */
const changed = (edit: (d: IDeployment) => void): IDeployment => {
  const copy = structuredClone(deployment)
  edit(copy)
  return copy
}
const container = (d: IDeployment) => d.spec!.template.spec!.containers[0]!

describe("deploy/kubernetes", () => {
  test("every manifest parses and validates against its Kubernetes schema", () => {
    assert.deepStrictEqual(
      objects.map((o) => Deployment.is(o) || typeof o !== "object" || o === null ? "" : String(Reflect.get(o, "kind"))),
      ["", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap"]
    )
    for (const object of objects) assert.deepStrictEqual(validateAgainstSchema(object), [])
  })

  test("the schemas refuse a wrong type, a missing required field and an unknown kind", () => {
    const badReplicas = structuredClone(deployment)
    Reflect.set(badReplicas.spec!, "replicas", "two")
    assert.match(validateAgainstSchema(badReplicas).join(), /replicas/)
    const noContainers = structuredClone(deployment)
    Reflect.deleteProperty(noContainers.spec!.template.spec!, "containers")
    assert.match(validateAgainstSchema(noContainers).join(), /containers/)
    const hpa = structuredClone(objects.find(HorizontalPodAutoscaler.is)!)
    Reflect.deleteProperty(hpa.spec!.metrics![0]!.pods!.target, "type")
    assert.match(validateAgainstSchema(hpa).join(), /type/)
    assert.isNotEmpty(validateAgainstSchema({ apiVersion: "v1", kind: "Nonsense" }))
  })

  test("kustomization.yaml applies the gateway's manifests (the adapter rules go to the adapter's namespace)", () => {
    const [kustomization] = parseYamlDocuments(read("deploy/kubernetes/kustomization.yaml"))
    assert.isTrue(typeof kustomization === "object" && kustomization !== null && "resources" in kustomization)
    assert.deepStrictEqual(Reflect.get(Object(kustomization), "resources"), manifests.slice(0, 4))
  })

  test("the Deployment is accepted: probes, drain, resources, security, secrets, one process per pod", () => {
    assert.deepStrictEqual(checkDeployment(deployment), [])
  })

  test("a Deployment missing readiness, drain time, a Secret or the security context is refused", () => {
    const refused = (edit: (d: IDeployment) => void, problem: RegExp) => {
      const problems = checkDeployment(changed(edit))
      assert.isTrue(problems.some((p) => problem.test(p)), problems.join("; "))
    }
    refused((d) => delete container(d).readinessProbe, /no readinessProbe/)
    refused((d) => (container(d).readinessProbe!.httpGet!.path = "/health"), /readinessProbe must GET \/ready/)
    refused((d) => (container(d).livenessProbe!.httpGet!.path = "/ready"), /livenessProbe must GET \/health/)
    refused((d) => delete container(d).lifecycle, /no preStop/)
    refused((d) => (d.spec!.template.spec!.terminationGracePeriodSeconds = 30), /must exceed/)
    refused(
      (d) => container(d).env!.push({ name: "DRAIN_TIMEOUT_MS", value: "90000" }) && container(d).env!.reverse(),
      /must exceed/
    )
    refused((d) => delete container(d).resources, /requests/)
    refused((d) => (d.spec!.template.spec!.securityContext = {}), /runAsNonRoot/)
    refused((d) => (container(d).securityContext!.readOnlyRootFilesystem = false), /readOnlyRootFilesystem/)
    refused((d) => {
      const env = container(d).env!
      env.splice(env.findIndex((e) => e.name === "JWT_SECRET"), 1, { name: "JWT_SECRET", value: "in-the-manifest" })
    }, /JWT_SECRET/)
    refused((d) => (container(d).env!.find((e) => e.name === "WORKERS")!.value = "4"), /WORKERS must be 1/)
    refused((d) => (container(d).env!.find((e) => e.name === "HOST")!.value = "127.0.0.1"), /HOST/)
    refused(
      (d) => container(d).env!.push({ name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: "s", key: "k" } } }),
      /REPLICATION_SLOT/
    )
  })

  test("Service, PDB and HPA point at the Deployment; the HPA's metric is served by an adapter rule", () => {
    assert.deepStrictEqual(served, ["wedsync_connection_open"])
    assert.deepStrictEqual(checkReferences(objects, served), [])
    const withLabels = (labels: Record<string, string>) =>
      objects.map((o) => Deployment.is(o) ? changed((d) => (d.spec!.template.metadata!.labels = labels)) : o)
    assert.match(checkReferences(withLabels({ app: "other" }), served).join(), /Service does not select/)
    assert.match(checkReferences(withLabels({ app: "other" }), served).join(), /PodDisruptionBudget does not select/)
    assert.match(checkReferences(objects, []).join(), /served by no adapter rule/)
    const withReplicas = objects.map((o) => Deployment.is(o) ? changed((d) => (d.spec!.replicas = 3)) : o)
    assert.match(checkReferences(withReplicas, served).join(), /replicas/)
  })

  test("the adapter's queries parse (promtool) and read a series the gateway exposes", () => {
    const exposed = documentedMetrics(read("docs/metrics.md"))
    assert.isTrue(exposed.has("wedsync_connection_open"))
    const exprs: Array<string> = []
    for (const rule of rules) {
      const series = promqlMetricNames(rule.seriesQuery)
      assert.isTrue("names" in series && series.names.every((n) => exposed.has(n)), rule.seriesQuery)
      exprs.push(rule.seriesQuery, renderAdapterQuery(rule.metricsQuery, rule.seriesQuery.replace(/\{.*$/, "")))
    }
    const accepted = promtoolCheckRules(asRecordingRules(exprs))
    assert.strictEqual(accepted.status, 0, accepted.output)
    const refused = promtoolCheckRules(
      asRecordingRules([renderAdapterQuery("sum(<<.Series>>{<<.LabelMatchers>>}) by (", "x")])
    )
    assert.notStrictEqual(refused.status, 0)
  })
})
