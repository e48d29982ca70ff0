/* Never ends: for Ctrl-C (interrupt) tests. `spins` shows progress. */
volatile unsigned long spins;

int main(void)
{
    for (;;)
        spins++;
}
