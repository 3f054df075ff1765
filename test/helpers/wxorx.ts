/**
 * Runs a program with W^X enforced by the kernel: prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN),
 * Linux >= 6.3, which is what systemd's MemoryDenyWriteExecute=yes applies on such kernels (older
 * ones get an equivalent seccomp filter). The flag survives execve, so the program cannot map
 * memory both writable and executable, nor make a writable mapping executable: a JIT cannot run.
 */
const PR_SET_MDWE = 65;
const PR_MDWE_REFUSE_EXEC_GAIN = 1;

const EXEC_UNDER_MDWE = [
  'import ctypes, os, sys',
  'libc = ctypes.CDLL(None, use_errno=True)',
  `if libc.prctl(${PR_SET_MDWE}, ${PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:`,
  '    sys.exit("prctl(PR_SET_MDWE) failed: errno %d (kernel older than 6.3?)" % ctypes.get_errno())',
  'os.execv(sys.argv[1], sys.argv[1:])',
].join('\n');

/** [command, args] that run `program args…` under W^X (python3 does the prctl, then execs). */
export function underWxorX(program: string, args: string[]): [string, string[]] {
  return ['python3', ['-c', EXEC_UNDER_MDWE, program, ...args]];
}
