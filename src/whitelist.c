/* whitelist.c - the classes and functions a checkpoint pickle may name
 * (dcp-format.md 2.3 and 4.3; Megatron-LM's common.pt args), with the module
 * aliases of older torch versions folded.  Anything else is refused by the
 * pickle reader.  Naming a class only makes an inert object node: nothing is
 * ever imported or called. */
#include "config.h"
#include "pvalue.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct {
	const char *module, *name;
	enum pc_id id;
} whitelist[] = {
	{ "torch.distributed.checkpoint.metadata", "Metadata", PC_METADATA },
	{ "torch.distributed.checkpoint.metadata", "TensorStorageMetadata", PC_TENSOR_STORAGE_MD },
	{ "torch.distributed.checkpoint.metadata", "BytesStorageMetadata", PC_BYTES_STORAGE_MD },
	{ "torch.distributed.checkpoint.metadata", "ChunkStorageMetadata", PC_CHUNK_MD },
	{ "torch.distributed.checkpoint.metadata", "MetadataIndex", PC_METADATA_INDEX },
	{ "torch.distributed.checkpoint.metadata", "TensorProperties", PC_TENSOR_PROPERTIES },
	{ "torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING", PC_MEM_FORMAT_ENUM },
	{ "torch.distributed.checkpoint.metadata", "MEM_FORMAT_ENCODING", PC_MEM_FORMAT_ENUM },
	{ "torch.distributed.checkpoint.metadata", "StorageMeta", PC_STORAGE_META },
	{ "torch.distributed._shard.sharded_tensor.metadata", "TensorProperties", PC_TENSOR_PROPERTIES },
	{ "torch.distributed._shard.sharded_tensor.metadata", "MEM_FORMAT_ENCODING", PC_MEM_FORMAT_ENUM },
	{ "torch.distributed._shard.sharded_tensor.metadata", "_MEM_FORMAT_ENCODING", PC_MEM_FORMAT_ENUM },
	{ "torch.distributed.checkpoint.filesystem", "_StorageInfo", PC_STORAGE_INFO },
	{ "torch.distributed.checkpoint.planner", "WriteItem", PC_PLANNER_CLASS },
	{ "torch.distributed.checkpoint.planner", "TensorWriteData", PC_PLANNER_CLASS },
	{ "torch.distributed.checkpoint.planner", "SavePlan", PC_PLANNER_CLASS },
	{ "torch.distributed.checkpoint.planner", "WriteItemType", PC_ENUM_OTHER },
	{ "megatron.core.dist_checkpointing.strategies.torch", "MCoreMetadata", PC_METADATA },
	{ "megatron.core.dist_checkpointing.strategies.torch", "MCoreSavePlan", PC_MCORE_SAVE_PLAN },
	{ "torch", "Size", PC_TORCH_SIZE },
	{ "torch", "UntypedStorage", PC_UNTYPED_STORAGE },
	{ "torch.storage", "UntypedStorage", PC_UNTYPED_STORAGE },
	{ "torch.serialization", "_get_layout", PC_GET_LAYOUT },
	{ "torch._utils", "_rebuild_tensor_v2", PC_REBUILD_V2 },
	{ "torch._utils", "_rebuild_tensor_v3", PC_REBUILD_V3 },
	{ "torch._utils", "_rebuild_tensor", PC_REBUILD_TENSOR },
	{ "torch._utils", "_rebuild_parameter", PC_REBUILD_PARAMETER },
	{ "torch._tensor", "_rebuild_from_type_v2", PC_REBUILD_FROM_TYPE_V2 },
	{ "collections", "OrderedDict", PC_ORDERED_DICT },
	{ "builtins", "getattr", PC_GETATTR },
	{ "pathlib", "PosixPath", PC_PATH },
	{ "pathlib", "WindowsPath", PC_PATH },
	{ "pathlib", "PurePosixPath", PC_PATH },
	{ "pathlib", "PureWindowsPath", PC_PATH },
	{ "pathlib._local", "PosixPath", PC_PATH },
	{ "pathlib._local", "WindowsPath", PC_PATH },
	{ "pathlib._local", "PurePosixPath", PC_PATH },
	{ "pathlib._local", "PureWindowsPath", PC_PATH },
	/* Megatron-LM training args in common.pt: the Namespace (NEWOBJ + BUILD
	 * of its attribute dict) and the enums its attributes hold */
	{ "argparse", "Namespace", PC_NAMESPACE },
	{ "megatron.core.enums", "ModelType", PC_ENUM_OTHER },
	{ "megatron.core.transformer.enums", "AttnBackend", PC_ENUM_OTHER },
};

static const char *const quantized_storages[] = {
	"QInt8Storage", "QUInt8Storage", "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage",
};

int ckpt__pickle_resolve(const char *module, const char *name, struct pv *g)
{
	static const char alias[] = "torch.distributed._shard.checkpoint";
	char folded[256];

	if (strncmp(module, alias, sizeof(alias) - 1) == 0 &&
	    (module[sizeof(alias) - 1] == '.' || module[sizeof(alias) - 1] == '\0')) {
		snprintf(folded, sizeof(folded), "torch.distributed.checkpoint%s",
			 module + sizeof(alias) - 1);
		module = folded;
	}
	g->u.g.aux = CKPT_DT_INVALID;
	for (size_t i = 0; i < sizeof(whitelist) / sizeof(whitelist[0]); i++) {
		if (strcmp(whitelist[i].module, module) == 0 &&
		    strcmp(whitelist[i].name, name) == 0) {
			g->u.g.id = whitelist[i].id;
			g->u.g.module = whitelist[i].module;
			g->u.g.name = whitelist[i].name;
			return 0;
		}
	}
	if (strcmp(module, "torch") != 0)
		return -EPERM;
	g->u.g.module = "torch";
	g->u.g.name = name;  /* points into the caller's arena copy */
	enum ckpt_dtype dt = ckpt_dtype_from_torch(name);
	if (dt != CKPT_DT_INVALID) {
		g->u.g.id = PC_TORCH_DTYPE;
		g->u.g.aux = dt;
		return 0;
	}
	dt = ckpt_dtype_from_storage(name);
	if (dt != CKPT_DT_INVALID) {
		g->u.g.id = PC_TORCH_STORAGE;
		g->u.g.aux = dt;
		return 0;
	}
	for (size_t i = 0; i < sizeof(quantized_storages) / sizeof(quantized_storages[0]); i++) {
		if (strcmp(name, quantized_storages[i]) == 0) {
			g->u.g.id = PC_TORCH_STORAGE;  /* aux stays invalid: refused later */
			return 0;
		}
	}
	return -EPERM;
}

