/* file.h: the files sesame reads: paths resolved against the configuration's folder, whole files.
 */
#ifndef SESAME_FILE_H
#define SESAME_FILE_H

/*
 * path as it is when absolute, else joined to dir (the configuration's folder, where relative
 * paths resolve). malloc'd; NULL when out of memory.
 */
char *file_resolve(const char *dir, const char *path);

/* The whole file, NUL-terminated, malloc'd; NULL with errno set when it cannot be read. */
char *file_read(const char *path);

#endif
