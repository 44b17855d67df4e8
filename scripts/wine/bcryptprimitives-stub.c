/* TEST ONLY, never shipped: Wine 8 has no bcryptprimitives.dll, whose
 * ProcessPrng Rust's standard library imports on Windows. This stands in
 * for it under Wine by calling advapi32's RtlGenRandom (SystemFunction036),
 * which Wine has. Real Windows (10 and later) has the real DLL. Built and
 * put beside the .exe by scripts/wine-run. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG part = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, part))
            return FALSE;
        data += part;
        length -= part;
    }
    return TRUE;
}
