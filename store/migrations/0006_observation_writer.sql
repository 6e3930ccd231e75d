-- clickrelay schema, version 6: the observation writer's last batch (store/writer_process.py).
-- The writer process commits each batch of observations together with the batch's key
-- here, in the same transaction. A batch sent again after the writer died without
-- answering is then recognised as committed and not written twice.
CREATE TABLE observation_writer (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    batch INTEGER NOT NULL
);
INSERT INTO observation_writer (id, batch) VALUES (1, 0);
