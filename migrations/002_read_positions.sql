-- Read positions (v1.1): the highest seq a user has read in a conversation. Redis holds the live
-- copy (hash per user); logic writes changes here behind it, in batches, with
-- read_seq = GREATEST(read_seq, new), so a repeated or reordered write never moves one back.
CREATE TABLE IF NOT EXISTS read_positions (
  user_id BIGINT UNSIGNED NOT NULL,
  conv VARCHAR(80) NOT NULL,
  read_seq BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (user_id, conv)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
