-- wrk script: cycle over the request paths in $BENCH_PATHS, with $BENCH_ACCEPT
-- and either $BENCH_COOKIE (portal session) or $BENCH_AUTHORIZATION (Orthanc).
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do
  paths[#paths + 1] = line
end
local headers = { ["Accept"] = os.getenv("BENCH_ACCEPT") }
if os.getenv("BENCH_COOKIE") ~= "" then headers["Cookie"] = os.getenv("BENCH_COOKIE") end
if os.getenv("BENCH_AUTHORIZATION") ~= "" then headers["Authorization"] = os.getenv("BENCH_AUTHORIZATION") end
local counter = math.random(#paths)

request = function()
  counter = counter % #paths + 1
  return wrk.format("GET", paths[counter], headers)
end
