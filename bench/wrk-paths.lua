-- wrk script: GET every path of a file (one per line) in turn, each thread from its own start.
-- Usage: wrk ... -s bench/wrk-paths.lua http://127.0.0.1:PORT -- PATHS_FILE
local paths, i = {}, 0

function init(args)
  for line in io.lines(args[1]) do
    if line ~= "" then paths[#paths + 1] = line end
  end
  i = math.random(#paths)
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
