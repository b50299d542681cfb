-- `rollout abort`: status.abort = true while a new revision is in progress.
local status = obj.status
if status == nil or status.abort == true then
  return obj
end
if status.canaryRevision == nil or status.canaryRevision == ""
    or status.canaryRevision == status.stableRevision then
  return obj
end
status.abort = true
return obj
