/* file.h: the files sesame reads: paths resolved against the configuration's folder, whole files.
 */
#ifndef SESAME_FILE_H
#define SESAME_FILE_H

#include <stddef.h>

/*
 * path as it is when absolute, else joined to dir (the configuration's folder, where relative
 * paths resolve). malloc'd; NULL when out of memory.
 */
char *file_resolve(const char *dir, const char *path);

/*
 * The whole file, NUL-terminated, malloc'd; NULL with errno set when it cannot be read. No
 * copy of its bytes is left behind in memory that was freed: a secret may be read with it.
 */
char *file_read(const char *path);

/* As file_read, and the file's length (which a NUL in the file makes differ from strlen). */
char *file_read_len(const char *path, size_t *len);

/* Wipes len bytes of buf (a secret, or text that may hold one) and frees it; NULL is fine. */
void file_free_secret(char *buf, size_t len);

#endif
