/** A progress bar on a terminal, a plain line per step otherwise (journals, CI logs); on stderr. */
export function progress(label: string, total: number): (done: number) => void {
  const tty = process.stderr.isTTY === true;
  return (done) => {
    if (tty) {
      const width = 30;
      const filled = Math.round((done / total) * width);
      process.stderr.write(`\r${label} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total}${done === total ? '\n' : ''}`);
    } else {
      process.stderr.write(`${label} ${done}/${total}\n`);
    }
  };
}
