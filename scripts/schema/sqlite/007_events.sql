-- 007_events: auth events (events.store), kept for events.retention. at_ms is SQLite's clock,
-- Unix milliseconds; id only grows (AUTOINCREMENT: never reused once purged), so a reader pages
-- through them by id. user_id is NULL for an event of no user; data is one JSON object's text.
CREATE TABLE IF NOT EXISTS "sesame_events" (
  "id" INTEGER PRIMARY KEY AUTOINCREMENT,
  "at_ms" INTEGER NOT NULL,
  "name" TEXT NOT NULL,
  "user_id" INTEGER,
  "data" TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS "sesame_events_at_ms" ON "sesame_events" ("at_ms");
CREATE INDEX IF NOT EXISTS "sesame_events_user_id" ON "sesame_events" ("user_id");
