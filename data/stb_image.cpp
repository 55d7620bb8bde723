// stb_image's implementation (Debian's libstb-dev), for PNG only: JPEG goes through libjpeg-turbo
// and the data sets hold nothing else (.jpg/.jpeg/.png). `make fuzz` showed why the other parsers
// stay out: a file starting FF FF FF D8 (fill bytes before the start marker, so not routed to
// libjpeg-turbo) reached stb's own JPEG decoder, whose Huffman table builder writes past its
// 257-entry size array (stbi__build_huffman, Debian's 0.0~git20220908).
// In a translation unit of its own so that the sanitizer builds can exempt it from one check: for
// a PNG chunk of length 0, stbi__getn calls memcpy(NULL, src, 0), undefined by the letter of the
// C standard but harmless. Both inputs are kept in tests/fuzz/regressions/image/.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#include <stb/stb_image.h>
