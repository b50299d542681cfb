-- `rollout promote --full`: status.promoteFull = true (skip the remaining steps and gates),
-- clearing any pause; when not progressing, it clears the pauses like `rollout promote`.
local status = obj.status
if status == nil or status.abort == true then
  return obj
end
local pauses = status.pauseConditions or {}
local inProgress = status.canaryRevision ~= nil and status.canaryRevision ~= ""
    and status.canaryRevision ~= status.stableRevision
if inProgress or status.phase == "Progressing" then
  if status.promoteFull == true then
    return obj
  end
  status.promoteFull = true
end
if #pauses > 0 then
  status.pauseConditions = {}
end
return obj
