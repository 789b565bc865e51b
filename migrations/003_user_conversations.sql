-- Conversation lists, also in MySQL (issue 11): Redis's per-user sets (uc:<userId>) are the fast
-- copy; this table is written behind them by the task tier's persist group (INSERT IGNORE, one
-- statement per batch, so a replayed batch changes nothing) and read back by logic when Redis
-- lost them. A row: the user has posted to, received a direct message in, or joined the conv.
CREATE TABLE IF NOT EXISTS user_conversations (
  user_id BIGINT UNSIGNED NOT NULL,
  conv VARCHAR(80) NOT NULL,
  PRIMARY KEY (user_id, conv)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
