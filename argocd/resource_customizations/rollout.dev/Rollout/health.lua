-- Argo CD health of a rollout.dev Rollout (Lua 5.1, as gopher-lua runs it).
-- Progressing until the controller has observed the current generation; then status.phase:
-- Healthy, Progressing, Paused (Argo CD's Suspended) or Degraded, with status.message.
local hs = {}
local status = obj.status
if status == nil or status.observedGeneration == nil
    or obj.metadata.generation == nil
    or status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe the rollout's generation"
  return hs
end
local phases = {
  Healthy = "Healthy",
  Progressing = "Progressing",
  Paused = "Suspended",
  Degraded = "Degraded",
}
local mapped = phases[status.phase]
if mapped == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the rollout's phase"
  return hs
end
hs.status = mapped
if status.message ~= nil and status.message ~= "" then
  hs.message = status.message
else
  hs.message = "Rollout is " .. status.phase
end
return hs
