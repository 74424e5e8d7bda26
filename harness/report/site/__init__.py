"""`hil publish`: the results store as a static site a team can browse (data, pages, incremental writer)."""
