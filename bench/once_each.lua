-- wrk script: each path in $BENCH_PATHS once, the threads taking turns down the list;
-- a thread that comes to the end says so in done() (the run is then void: it read a
-- path twice). Headers as frames.lua.
local threads = {}
local count = 0
local step = tonumber(os.getenv("BENCH_THREADS"))

setup = function(thread)
  thread:set("id", count)
  table.insert(threads, thread)
  count = count + 1
end

local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do
  paths[#paths + 1] = line
end
local headers = { ["Accept"] = os.getenv("BENCH_ACCEPT") }
if os.getenv("BENCH_COOKIE") ~= "" then headers["Cookie"] = os.getenv("BENCH_COOKIE") end
if os.getenv("BENCH_AUTHORIZATION") ~= "" then headers["Authorization"] = os.getenv("BENCH_AUTHORIZATION") end
local next_index
ran_out = 0

init = function(args)
  next_index = id + 1
end

request = function()
  if next_index > #paths then
    ran_out = 1
    next_index = id + 1
  end
  local path = paths[next_index]
  next_index = next_index + step
  return wrk.format("GET", path, headers)
end

done = function(summary, latency, requests)
  for _, thread in ipairs(threads) do
    if thread:get("ran_out") == 1 then
      io.write("the list ran out\n")
      return
    end
  end
end
