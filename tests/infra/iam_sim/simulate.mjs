// Evaluate a batch of AWS requests against IAM policies with @cloud-copilot/iam-simulate.
//
// stdin: {"identities": {name: [{"name": ..., "policy": {...}}, ...]},
//         "resourcePolicies": {name: {...}},
//         "requests": [{"id", "identity", "resourcePolicy", "principal", "action", "resource",
//                       "accountId", "context": {key: value}}, ...]}
// stdout: [{"id", "decision": "Allowed" | "ExplicitlyDenied" | "ImplicitlyDenied" | "Error",
//           "errors"?: ...}, ...] in request order.
// One process per batch: the test module sends its whole decision table at once.
import { allowedContextKeysForRequest, runSimulation } from '@cloud-copilot/iam-simulate'

async function readStdin() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

// The simulator ignores a context key the action does not have: refuse it, so that a typo in the
// test's table cannot turn into a silently absent key.
async function unknownContextKeys(request) {
  const [service, action] = request.action.split(':')
  const allowed = new Set(await allowedContextKeysForRequest(service, action, request.resource, false, undefined))
  return Object.keys(request.context ?? {}).filter((key) => !allowed.has(key.toLowerCase()))
}

async function decide(batch, request) {
  let unknown
  try {
    unknown = await unknownContextKeys(request)
  } catch (error) {
    return { id: request.id, decision: 'Error', errors: { message: String(error) } }
  }
  if (unknown.length > 0) {
    return { id: request.id, decision: 'Error', errors: { message: 'context keys the action does not have', keys: unknown } }
  }
  const simulation = {
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: request.accountId },
      contextVariables: request.context ?? {},
    },
    identityPolicies: batch.identities?.[request.identity] ?? [],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: request.resourcePolicy ? batch.resourcePolicies[request.resourcePolicy] : undefined,
  }
  // Strict: the context is exactly what the request carries; an absent key is absent.
  const response = await runSimulation(simulation, { simulationMode: 'Strict' })
  if (response.resultType === 'error') {
    return { id: request.id, decision: 'Error', errors: response.errors }
  }
  return { id: request.id, decision: response.overallResult }
}

const batch = await readStdin()
const results = []
for (const request of batch.requests) results.push(await decide(batch, request))
process.stdout.write(JSON.stringify(results) + '\n')
