/**
 * `p`'s outcome, or `onTimeout()`'s after `ms` if `p` has not settled by then (its value, or its throw as a
 * rejection). The timer is cleared either way; `p` itself keeps running (nothing here can cancel it).
 */
export function withDeadline<T, U>(p: Promise<T>, ms: number, onTimeout: () => U): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<U>((resolve, reject) => {
    timer = setTimeout(() => {
      try {
        resolve(onTimeout());
      } catch (e) {
        reject(e);
      }
    }, ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
