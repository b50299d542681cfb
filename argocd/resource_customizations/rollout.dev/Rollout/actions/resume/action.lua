-- `rollout resume`: remove the PausedByUser pause condition; other pauses stay (promote them).
if obj.status == nil or obj.status.pauseConditions == nil then
  return obj
end
local kept = {}
local removed = false
for _, p in ipairs(obj.status.pauseConditions) do
  if p.reason == "PausedByUser" then
    removed = true
  else
    table.insert(kept, p)
  end
end
if removed then
  obj.status.pauseConditions = kept
end
return obj
