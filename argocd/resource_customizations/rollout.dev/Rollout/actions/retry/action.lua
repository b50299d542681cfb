-- `rollout retry`: status.abort = false, so the update starts again from step 0.
if obj.status == nil or obj.status.abort ~= true then
  return obj
end
obj.status.abort = false
return obj
