# Fails when the shared library LIB exports a symbol of the command line's file I/O (quarry_io):
# the .npy reader and writer, or the signal handling. Run with -DNM=... -DLIB=... -P.
execute_process(COMMAND ${NM} -D -C --defined-only ${LIB} OUTPUT_VARIABLE symbols
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} -D ${LIB} failed (${rc})")
endif()
string(REGEX MATCHALL "[^\n]*(quarry::io::|[Nn]py|PartialOutput|remove_partial_output|report_truncated_input|progress_line_open)[^\n]*"
  found "${symbols}")
if(found)
  string(REPLACE ";" "\n" found "${found}")
  message(FATAL_ERROR "${LIB} exports file I/O symbols of quarry_io:\n${found}")
endif()
string(LENGTH "${symbols}" length)
if(length LESS 1000)
  message(FATAL_ERROR "${NM} -D ${LIB} listed almost nothing: the check would prove nothing")
endif()
message(STATUS "no .npy or signal symbols among the exports of ${LIB}")
