//! The throwaway PostgreSQL server of `e2e::postgres`: it starts (as the `postgres` user
//! when the tests run as root) and hands out separate databases that answer.

use e2e::Postgres;

#[test]
fn shared_server_gives_separate_databases_that_answer() {
    let pg = Postgres::shared();
    let a = pg.new_database();
    let b = pg.new_database();
    assert_ne!(a, b, "two databases, two URLs");
    for url in [&a, &b] {
        assert_eq!(pg.psql(url, "select 1").unwrap(), "1", "{url}");
        let name = url.rsplit('/').next().unwrap();
        assert_eq!(pg.psql(url, "select current_database()").unwrap(), name);
    }
    pg.psql(&a, "create table only_in_a (x int)").unwrap();
    let err = pg.psql(&b, "select * from only_in_a").unwrap_err();
    assert!(err.contains("only_in_a"), "{err}");
}
