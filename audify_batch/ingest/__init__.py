"""Audio in: find recordings (local or S3), read with retries, decode, plan segments, DataLoader workers."""
