-- `rollout resume`: remove the PausedByUser pause condition, and a pause request
-- (status.pausedByUser) the controller has not taken yet; other pauses stay (promote them).
if obj.status == nil then
  return obj
end
local kept = {}
local removed = obj.status.pausedByUser == true
for _, p in ipairs(obj.status.pauseConditions or {}) do
  if p.reason == "PausedByUser" then
    removed = true
  else
    table.insert(kept, p)
  end
end
if removed then
  obj.status.pausedByUser = nil
  if obj.status.pauseConditions ~= nil then
    obj.status.pauseConditions = kept
  end
end
return obj
