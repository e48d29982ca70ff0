/* build-flags: -static -g -O0 -lm */
/* SSE: printf of doubles, float arithmetic, memcpy/strlen of big buffers. */
#include <stdio.h>
#include <string.h>
#include <math.h>

struct big { double values[64]; char text[1000]; };

static struct big a, b;

int main(void)
{
    double x = 1.0;
    for (int i = 0; i < 64; i++) {
        a.values[i] = x / 3.0;
        x *= 1.5;
    }
    memset(a.text, 'z', sizeof a.text - 1);
    memcpy(&b, &a, sizeof a);
    printf("%f %.10f %g %e\n", b.values[0], b.values[10], b.values[63], -b.values[5]);
    printf("strlen %zu, sqrt %.6f, float %f\n", strlen(b.text), sqrt(b.values[20]), (float)b.values[3]);
    printf("compare %d\n", memcmp(&a, &b, sizeof a));
    return 0;
}
