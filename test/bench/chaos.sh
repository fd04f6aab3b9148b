#!/bin/sh
# chaos.sh - request migration under repeated worker crashes ('make
# bench'): 1200 streamed requests on a Poisson schedule through one
# frontend to four mock workers, played without and with six SIGKILLs
# (each worker restarted at once); failed requests, TTFT and ITL with
# kills as ratios to the run without, and each kill's time to the last of
# its requests resumed.  Scale and load are set by the environment
# (REQUESTS, RATE, KILLS, SPEEDUP ...); see chaos.py.
exec python3 "$(dirname "$0")/chaos.py"
