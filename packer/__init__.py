"""Pack LeRobot v3 datasets into lerobot-wds tar shards of whole episodes."""
