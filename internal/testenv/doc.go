// Package testenv starts real servers (PostgreSQL, Redis, Prometheus) for HXP's integration
// tests, so that connectors and the gateway are tested against the systems they talk to in
// production instead of mocks.
//
// Every server listens on a free loopback port (127.0.0.1), keeps its data in a fresh
// temporary directory, is waited on until it answers (with a deadline and an error that quotes
// the tail of its log), and is stopped and removed by t.Cleanup. A server can be stopped,
// killed with SIGKILL to simulate a crash, and started again on the same port and data
// directory.
//
// Starting PostgreSQL costs about a second, so SharedPostgres and SharedRedis hand out a fresh
// database on one server per test binary. Tests that stop or kill a server must start their
// own with StartPostgres or StartRedis.
//
// The server binaries come from Debian packages that scripts/test-deps.sh installs. When one
// is missing the test fails and says so; it is skipped only when HXP_TEST_SKIP_SERVICES=1.
//
// Buffer captures a logger's output, and CheckJSONLog (or JSONLogLines) checks it: one JSON
// object per line, no key written twice.
//
// Dial gives a connection for HTTP requests written by hand, begun before a change such as
// a shutdown and finished after it; Unread tells when a server has read what was sent, and
// WaitFor polls a condition with a deadline that guards against a hang.
package testenv
