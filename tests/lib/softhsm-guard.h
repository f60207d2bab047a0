#ifndef P11KMS_TESTS_SOFTHSM_GUARD_H
#define P11KMS_TESTS_SOFTHSM_GUARD_H

/* For the tests that kill p11kms processes with SIGKILL at random moments, including while they
 * open the token.
 *
 * SoftHSM 2.6's file store rewrites the token's token.object in place at every successful
 * C_Login (it stores the token flags again): it truncates the file, releases its lock and only
 * then writes the new contents (seen with strace: ftruncate(0), F_UNLCK, write of ~320 bytes).
 * A process killed between the truncation and the write leaves token.object empty, and SoftHSM
 * then reports the token as uninitialized to every process: the label, the PIN blobs and the
 * key that encrypts every object are gone. In a loop killing `pkcs11-tool --login` at random
 * points this happened within a few dozen kills. p11kms never writes token.object (it must log
 * in, and the rewrite is SoftHSM's), so this is a defect of the token, not of what the tests
 * check; a real HSM does not lose its token when a client dies.
 *
 * The guard keeps a copy of token.object taken before the kills start and, after each kill,
 * puts it back if the kill emptied the file, saying so on stderr. Its contents do not change
 * once the token is initialized (same PINs, same token key), so the copy is the file SoftHSM
 * would have written. Tokens other than the harness's own SoftHSM token are left alone.
 *
 * The same window is seen by a process that starts while another logs in: it reads token.object
 * empty and finds no token (1 in 300 token listings during a loop of logins elsewhere), or its
 * C_Login finds the user PIN not initialized (a CI run of the two-process test). fx_open
 * therefore tries twice more on the harness's SoftHSM token in either case. */

#include <stdbool.h>

/* True when the tests run on the SoftHSM token the harness made (not NSS, not an external one). */
bool softhsm_guard_own_token(void);

/* Takes the copy (once; a hard error if the harness's SoftHSM token has no token.object). */
void softhsm_guard_arm(void);

/* Puts the copy back if token.object is empty; returns true when it did. */
bool softhsm_guard_repair(void);

/* How many repairs there were in this process. */
unsigned softhsm_guard_repairs(void);

#endif
