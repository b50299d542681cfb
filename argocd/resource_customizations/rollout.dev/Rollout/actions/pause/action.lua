-- `rollout pause`: status.pausedByUser = true, which the controller turns into the PausedByUser
-- pause condition. Appending that condition here would grow status.pauseConditions, and Argo CD
-- before 3.0.13 / 3.1.1 fails on an action result with an array longer than the input's.
if obj.status == nil then
  obj.status = {}
end
if obj.status.pausedByUser == true then
  return obj
end
for _, p in ipairs(obj.status.pauseConditions or {}) do
  if p.reason == "PausedByUser" then
    return obj
  end
end
obj.status.pausedByUser = true
return obj
