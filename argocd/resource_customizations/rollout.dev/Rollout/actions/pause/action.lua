-- `rollout pause`: add a PausedByUser pause condition, unless one is there.
if obj.status == nil then
  obj.status = {}
end
local pauses = obj.status.pauseConditions or {}
for _, p in ipairs(pauses) do
  if p.reason == "PausedByUser" then
    return obj
  end
end
table.insert(pauses, {reason = "PausedByUser", startTime = os.date("!%Y-%m-%dT%H:%M:%SZ")})
obj.status.pauseConditions = pauses
return obj
