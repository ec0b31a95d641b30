"""Stream lerobot-wds shards into samples identical to LeRobotDataset's."""
