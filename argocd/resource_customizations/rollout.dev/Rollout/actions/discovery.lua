-- Which actions apply to this Rollout now; the same conditions under which the CLI's
-- `rollout promote|promote --full|abort|retry|pause|resume|restart` change anything.
local actions = {}
local status = obj.status or {}
local pauses = status.pauseConditions or {}
local aborted = status.abort == true
local inProgress = status.canaryRevision ~= nil and status.canaryRevision ~= ""
    and status.canaryRevision ~= status.stableRevision
local progressing = inProgress or status.phase == "Progressing"
local pausedByUser = status.pausedByUser == true
for _, p in ipairs(pauses) do
  if p.reason == "PausedByUser" then
    pausedByUser = true
  end
end
local paused = #pauses > 0

actions["promote"] = {["disabled"] = aborted or not paused}
actions["skip-current-step"] = {["disabled"] = aborted or not paused}
actions["promote-full"] = {
  ["disabled"] = aborted or not ((progressing and status.promoteFull ~= true) or paused)
}
actions["abort"] = {["disabled"] = aborted or not inProgress}
actions["retry"] = {["disabled"] = not aborted}
actions["pause"] = {["disabled"] = pausedByUser}
actions["resume"] = {["disabled"] = not pausedByUser}
actions["restart"] = {["disabled"] = false}
return actions
