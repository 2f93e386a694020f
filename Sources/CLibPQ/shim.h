// libpq, PostgreSQL's own C client (Debian: libpq-dev), for the ledger writer's connection.
#include <postgresql/libpq-fe.h>
