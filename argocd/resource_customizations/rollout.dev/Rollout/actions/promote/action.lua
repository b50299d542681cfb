-- `rollout promote`: clear the pause conditions (a step pause moves to the next step).
-- Argo CD sends the status change to the status subresource.
if obj.status == nil or obj.status.abort == true then
  return obj
end
local pauses = obj.status.pauseConditions or {}
if #pauses > 0 then
  obj.status.pauseConditions = {}
end
return obj
