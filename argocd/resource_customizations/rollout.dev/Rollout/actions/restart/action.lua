-- `rollout restart`: the rollout.dev/restartedAt pod template annotation set to now, so a new
-- revision rolls out with its steps. A spec change: see docs/gitops.md for ignoreDifferences.
if obj.spec == nil or obj.spec.template == nil then
  return obj
end
local template = obj.spec.template
if template.metadata == nil then
  template.metadata = {}
end
if template.metadata.annotations == nil then
  template.metadata.annotations = {}
end
template.metadata.annotations["rollout.dev/restartedAt"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
