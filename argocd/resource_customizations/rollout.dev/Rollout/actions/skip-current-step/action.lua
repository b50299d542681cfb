-- Argo Rollouts' skip-current-step, here what `rollout promote` does: clear the pause
-- conditions, so a paused step (pause, blue-green pause, inconclusive gate) ends and the
-- rollout moves to the next step.
if obj.status == nil or obj.status.abort == true then
  return obj
end
local pauses = obj.status.pauseConditions or {}
if #pauses > 0 then
  obj.status.pauseConditions = {}
end
return obj
