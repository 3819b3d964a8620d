/* Test-only entry points, compiled into the test build (AGENT_TEST_BUILD) and never into the
 * production binary:
 *   --test-age-decrypt KEYS [IN]   open an age file (stdin without IN) with the X25519 private
 *                                  keys in KEYS (one 64-character hex key per line) and stream
 *                                  the plaintext to stdout; on failure print
 *                                  "age-fail CLASS CODE: MESSAGE" to stderr and exit 1
 *   --test-seal RECIPIENT IN OUT [--no-threads]
 *                                  seal IN to an age1... recipient as OUT; print the digests
 *   --test-sha256 [--portable] IN  print the SHA-256 of IN (SHA extensions or portable) and
 *                                  libsodium's
 *   --test-manifest TASK_ID IN     parse a manifest plaintext; print its canonical digest or
 *                                  "manifest-fail CODE: MESSAGE"
 * The production binary also never reads GG_AGENT_TEST_ATTESTATION_DIR (attest.c) or
 * GG_AGENT_TEST_REFUSE_THREAD (age_seal.c: refuse the Nth thread and later ones). */
#ifndef AGENT_TESTHOOKS_H
#define AGENT_TESTHOOKS_H

int testhooks_main(int argc, char **argv);

#endif
