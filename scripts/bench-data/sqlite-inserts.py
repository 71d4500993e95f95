# The SQLite insert workload of issue 14, as SQL on stdout: a table, then
# 20,000 rows of about 80 bytes in 200 transactions of 100. Used by
# scripts/bench-fs.sh (the partial step) and tests/sh/case-mount-compact.sh.
print("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
for t in range(200):
    print("BEGIN;")
    for i in range(100):
        print(f"INSERT INTO t(v) VALUES ('row {t}-{i} {'x' * 60}');")
    print("COMMIT;")
