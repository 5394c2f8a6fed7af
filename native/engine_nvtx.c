/* NVTX ranges for the engine: a tiny C ABI over NVTX3's header-only API, so that the managed side needs
 * no knowledge of NVTX's inline functions or its injection mechanism. */
#include <nvtx3/nvToolsExt.h>

static nvtxDomainHandle_t domain;

__attribute__((visibility("default"))) int engine_nvtx_version(void) { return 3; }

__attribute__((visibility("default"))) void engine_nvtx_push(const char *name)
{
    if (!domain) domain = nvtxDomainCreateA("engine");
    nvtxEventAttributes_t a = {0};
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = name;
    nvtxDomainRangePushEx(domain, &a);
}

__attribute__((visibility("default"))) void engine_nvtx_pop(void)
{
    if (!domain) domain = nvtxDomainCreateA("engine");
    nvtxDomainRangePop(domain);
}
