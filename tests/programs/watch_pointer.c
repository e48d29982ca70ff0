/* `p` first points at `a`, then at `b`: `watch -l *p` must stay on `a`. */
#include <stdio.h>

int a, b;
int *volatile p = &a;

int main(void)
{
    *p = 1;        /* a: 0 -> 1 */
    p = &b;
    *p = 2;        /* b: not the watched location */
    a = 3;         /* a: 1 -> 3 */
    printf("a=%d b=%d\n", a, b);
    return 0;
}
