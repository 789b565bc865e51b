-- Users: names unique ignoring case through name_lower.
CREATE TABLE IF NOT EXISTS users (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(32) NOT NULL,
  name_lower VARCHAR(32) NOT NULL,
  password_hash VARCHAR(255) NOT NULL,
  created_at BIGINT NOT NULL,
  UNIQUE KEY users_name_lower (name_lower)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Messages: written by the task tier's persist group, idempotent on id and (conv, seq).
-- History reads by (conv, seq) ranges, served by the unique key.
CREATE TABLE IF NOT EXISTS messages (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  conv VARCHAR(80) NOT NULL,
  seq BIGINT UNSIGNED NOT NULL,
  sender_id BIGINT UNSIGNED NOT NULL,
  sender_name VARCHAR(32) NOT NULL,
  body TEXT NOT NULL,
  ts BIGINT NOT NULL,
  client_msg_id VARCHAR(64) NULL,
  UNIQUE KEY messages_conv_seq (conv, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
