# `cmake --install` puts the libraries (libquarry.so and beside it the plugins libquarry_faiss.so
# and, with CUDA, libquarry_cuda.so), the public headers, the quarry program and a CMake package config so another project
# can find_package(quarry) and link quarry::quarry.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS quarry quarry_cli EXPORT quarryTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
set_target_properties(quarry_cli PROPERTIES INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
# The plugins go beside libquarry.so, where libquarry looks for them. They are loaded, never
# linked, so they are not part of the exported targets.
install(TARGETS quarry_faiss LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
if(QUARRY_WITH_CUDA)
  install(TARGETS quarry_cuda LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/host/include/quarry DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT quarryTargets NAMESPACE quarry:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/quarry)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/quarryConfig.cmake.in
  ${PROJECT_BINARY_DIR}/quarryConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/quarry)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/quarryConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/quarryConfig.cmake ${PROJECT_BINARY_DIR}/quarryConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/quarry)
