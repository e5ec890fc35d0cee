#define PY_SSIZE_T_CLEAN
#include <Python.h>
static struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "_ring", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__ring(void) { return PyModule_Create(&m); }
